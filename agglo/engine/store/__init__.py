"""The Zarr result cube and what keeps it safe: its layout and writes (``cube``), the writer's
lease (``lease``), chunk checksums (``integrity``) and checks on files the user names (``outputs``)."""
