"""HUD tasks: the validated task model and taskset loading (files, built-in names, Hugging Face datasets)."""
