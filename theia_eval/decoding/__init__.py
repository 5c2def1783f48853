"""Decoding a Theia student's teacher predictions back into teacher outputs (`theia-eval decode`)."""
