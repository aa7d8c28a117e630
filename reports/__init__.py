"""Markdown reports with figures and tables from results JSON; committed reports of real runs."""
