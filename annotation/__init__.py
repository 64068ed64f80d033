"""Human annotation in Argilla: local server, push with AI suggestions, pull and agreement."""
