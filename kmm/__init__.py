"""kmm: video-text multimodal learning with TensorFlow, Keras 3 and TF-Hub encoders."""

__version__ = "0.4.0"
