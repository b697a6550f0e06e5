"""Where towns and travel times come from: GeoNames places, the user's town tables,
synthetic towns, travel-time tables, and the road-grid travel times of a study."""
