"""Signing and verification of the dossier: development PKI, PAdES signatures, checks for reviewers."""
