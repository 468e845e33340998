"""Data layer: sources and their on-disk layout, NIfTI checks, preprocessing, the prepared-data
contract (:mod:`.dataset`) and every clip window (:mod:`.clips`)."""
