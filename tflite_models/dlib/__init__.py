"""The previous default face embedder (dlib ResNet, int8): a complete model folder for FacePipeline(model_dir=...)."""
