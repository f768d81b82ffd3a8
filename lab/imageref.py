"""Image references as containerd resolves them (what the lab's kubelets compare images by)."""


def normalise(image: str) -> str:
    """A reference as containerd resolves it: docker.io and library/ filled in, tag `latest` by default."""
    first, _, rest = image.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        image = f"docker.io/{image if rest else 'library/' + image}"
    if "@" not in image and ":" not in image.rpartition("/")[2]:
        image += ":latest"
    return image
