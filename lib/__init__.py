"""MiniPlaces scene-classification study: data, models, one trainer, attacks, report."""
