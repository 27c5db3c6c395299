"""Lightning data modules; each serves compact uint8 batches and turns them into model input on the device."""
