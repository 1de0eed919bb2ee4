"""Scripts outside the library: the peer, the probe, the evaluation runs."""
