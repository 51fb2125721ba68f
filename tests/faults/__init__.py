"""Failures injected across layers: dead servers, bad rows, deadlines, leaked secrets (issue 15)."""
