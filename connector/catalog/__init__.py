"""Datasets and their offers, rendered as a DCAT catalog for DSP."""
