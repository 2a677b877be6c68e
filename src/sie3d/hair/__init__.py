"""Hair from the photo: which pixels are the person's hair (`mask`). Hair geometry and texture come later."""
