"""The Ray layer: starting Ray, planning resources, the Train run and its worker loop, the
Tune sweep and its confirmation. The only part of the package that imports Ray at its top."""
