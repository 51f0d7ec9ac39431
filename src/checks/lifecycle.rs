use super::{Context, Findings};

pub(super) fn check(_cx: &Context, _out: &mut Findings) {}
