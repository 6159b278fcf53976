"""The analyze step: a language model reads a succeeded job's result, against a fake OpenAI-compatible server."""
