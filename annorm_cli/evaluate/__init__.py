"""Metrics with a stated protocol: FID / intra-FID (fid), class accuracy (recognisability),
inpainting against classical methods (inpainting) with KID of hole crops (perceptual)."""
