# The meshready image: `make image` (docker build -t ghcr.io/meshready/meshready:$VERSION .).
# `make image-rootfs` assembles and runs the final stage's filesystem without a container engine.

# Build: the release binary, from the locked dependencies only.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/meshready

# Run: glibc and libgcc only (what the binary links), no shell, no package manager, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="meshready" \
      org.opencontainers.image.description="Tells whether Kubernetes namespaces are ready for the Istio service mesh, and why requests would fail with 503 once meshed" \
      org.opencontainers.image.source="https://github.com/meshready/meshready" \
      org.opencontainers.image.url="https://github.com/meshready/meshready" \
      org.opencontainers.image.documentation="https://github.com/meshready/meshready/blob/main/README.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="meshready" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /src/target/release/meshready /usr/local/bin/meshready
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/meshready"]
CMD ["controller"]
