"""Codex-S for the embedded model: the training set, the LoRA fine-tune and its export.

Nothing in ``lsp_server`` imports this package. The data pipeline (``extract``,
``decontam``, ``verify``, ``build_data``) is torch-free and runs in the product's venv;
``train`` and ``export`` need the ``[train]`` extra in ``.venv-train`` (README.md).
"""
