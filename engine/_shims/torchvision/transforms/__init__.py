from torchvision.transforms import functional  # noqa: F401


def __getattr__(name):
    raise ImportError(
        f"torchvision.transforms.{name} is not available: this is xtuner-wizard's import-only "
        "stand-in for torchvision (install a torchvision that matches your torch to use it)"
    )
