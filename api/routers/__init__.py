"""One router per resource: health, certificates (and the verification page), relay."""
