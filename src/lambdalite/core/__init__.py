"""The core every other package stands on: bundles and archives, images, the model cache, progress."""
