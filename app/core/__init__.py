"""Qt-free heart of Bench Data Manager: models, stores, query language.

Nothing under ``app.core`` may import PySide6 (tests/test_architecture.py enforces it).
"""
