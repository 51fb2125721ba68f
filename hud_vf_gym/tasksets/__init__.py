"""Built-in tasksets: HUD task rows shipped as JSON files next to this module (`2048.json`)."""
