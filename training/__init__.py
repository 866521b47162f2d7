"""vem.training: synthetic cut-on-beat data (`vem-synth`) and the demo checkpoint's training (`vem-train`)."""
