"""Inspection of alignment quality: data views of a dataset or pair, pictures, and the HTML report."""
