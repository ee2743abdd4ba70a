"""Resource limits applied to untrusted inputs (photos, uploads), in one place.

Every limit is a plain module constant so that a caller (a server, a test) can read it and pass
a different value to the functions that take one (e.g. ``load_image(..., max_pixels=...)``).
"""

from __future__ import annotations

#: Largest photo accepted, in pixels (~ a 10000 x 8000 photo). Checked from the file header,
#: before any pixel is decoded, which is also the guard against decompression bombs.
MAX_PIXELS = 80_000_000

#: Smallest side accepted, in pixels: no face fits in less.
MIN_SIDE = 32

#: Largest photo file accepted, in bytes. Real photos within ``MAX_PIXELS`` are far smaller;
#: this only stops e.g. a multi-gigabyte file (or a device) from being handed to a decoder.
MAX_FILE_BYTES = 1 << 30

#: Rows converted at a time when turning decoded pixels into uint8 RGB (bounds the temporary
#: memory of 16-bit scaling and alpha compositing for images near ``MAX_PIXELS``).
CONVERT_CHUNK_ROWS = 512
