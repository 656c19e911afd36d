"""What both quantizers share: calibration data as a quantizer reads it (batches, the feed NNCF iterates,
the warnings about data that quantizes but ships a broken engine), and the figure quantize.nncf's accuracy
control keeps."""
