"""Where model files come from: paths, installed model packages, the Hugging Face Hub."""
