"""vem.export: PyTorch VeM -> ONNX per component, fp16 graphs, TensorRT engines, the bundle.

Python API behind `vem-export` (vem.export.cli):

- `bundle_writer.export_bundle(source, out_dir, precision="fp32", *, engines="no",
  max_seconds=60.0, max_storyboards=32, seed=0, search_islands=False, transitions_onnx=None,
  end_to_end_seconds=3.0, end_to_end_steps=4, progress=print) -> ExportResult` (``.manifest``,
  ``.folder``, ``.reports``, ``.end_to_end``); ``source`` is a VeM, a VemConfig, "demo"/"paper"
  (untrained, seeded) or a checkpoint path; ``precision`` may be a list ("fp32", "fp16") to
  write both into one bundle.
- `bundle_writer.onnx_generate(folder, manifest, inputs, seconds, *, steps, seed, precision)`:
  the sampler loop over a bundle's graphs (the end-to-end check's ONNX side).
- `graphs.component_specs(config)`: every component's graph interface (docs/architecture.md)
  and example-input makers; `graphs.BranchDenoiser` etc. are the traced wrappers.
- `fp16.search_islands(...)`: the fp32-island measurement.
"""
