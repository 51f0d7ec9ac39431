# Build: docker build -t meshready .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/meshready /usr/local/bin/meshready
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/meshready"]
CMD ["controller"]
