"""The embedded default model (SmolLM2-135M-Instruct) and its in-process OpenAI-compatible endpoint."""
