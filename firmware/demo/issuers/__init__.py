"""Test and demo issuers of every credential format: they sign; the verifiers never import them."""
