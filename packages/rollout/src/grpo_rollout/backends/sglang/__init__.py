"""The SGLang backend: an HTTP client of SGLang workers (`generator`), launched by the service or not."""
