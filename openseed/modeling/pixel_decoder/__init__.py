"""pixel_decoder."""
