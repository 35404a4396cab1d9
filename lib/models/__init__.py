"""The models: the custom convolution, the CNNs, the ViT, and building one from a configuration."""
