"""``geoctl``: the operators' tool of a geoingest topology — status, regions, edges (docs/geoctl.md)."""
