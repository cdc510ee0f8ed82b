"""draco-em: DRACO (denoising-reconstruction masked autoencoder) for cryo-EM.

The package follows the data's path: ``io`` → ``simulate``/``prepare`` → ``model`` → ``train``
→ ``infer`` → ``evaluate``; ``cli`` only parses arguments and calls the library.
"""

__version__ = "0.1.0"
