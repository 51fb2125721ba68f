"""Bridges to other training frameworks, each an optional extra imported only when used (`integrations.art`)."""
