"""arXiv CS -> Physics transfer with the suite's components at GPU scale."""
