"""The ignore values of the label-map formats, shared by registration and the prepare scripts."""

PNG_IGNORE = 255  # ignore label of uint8 png label maps
TIF_IGNORE = 65535  # ignore label of uint16 tif label maps (more than 255 classes)
