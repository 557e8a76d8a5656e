"""Running on more than one machine: where Ray runs (cluster.connect) and launch material
(ray-cluster.yaml, slurm-ray.sbatch, kuberay-raycluster.yaml)."""
