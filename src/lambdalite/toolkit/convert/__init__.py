"""Models from elsewhere into bundles: `import` (TorchScript, SageMaker archives, TFLite, ONNX),
`export` (a PyTorch factory) and static int8 quantization."""
