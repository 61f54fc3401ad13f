# One provider per region; the module blocks in main.tf pass them on.
provider "aws" {
  alias  = "a"
  region = var.region_a.name

  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias  = "b"
  region = var.region_b.name

  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias  = "witness"
  region = var.witness_region.name

  default_tags {
    tags = local.tags
  }
}
