"""sbatch resource profiles (*.yaml), installed as the package data of `curate.profiles`."""
