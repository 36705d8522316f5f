"""The weekly HTML report: data from the store, SVG charts, one self-contained file."""
