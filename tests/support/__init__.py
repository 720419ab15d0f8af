"""Helpers shared by the test folders: real central servers (``servers``), waiting for a
condition (``waiting``), MADSci 0.8.1's venv (``madsci_env``), a real full disk
(``fulldisk``) and sample instrument files (``extract_samples``)."""
