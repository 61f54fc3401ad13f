# Three EKS regions for one Meridian cluster: two data regions and a witness,
# their VPCs peered so peers replicate over private addresses, a private zone
# with the replication names, and Route 53 latency routing with health checks
# on /health/ready (dns.tf).

locals {
  tags = merge(var.tags, {
    "app.kubernetes.io/part-of" = "meridian"
    "meridian-cluster"          = var.cluster_name
  })
  regions = {
    a       = var.region_a
    b       = var.region_b
    witness = var.witness_region
  }
}

module "region_a" {
  source    = "./modules/region"
  providers = { aws = aws.a }

  cluster_name                        = var.cluster_name
  region                              = var.region_a.name
  vpc_cidr                            = var.region_a.cidr
  availability_zone_ids               = var.region_a.zone_ids
  peer_cidrs                          = [var.region_b.cidr, var.witness_region.cidr]
  witness                             = false
  kubernetes_version                  = var.kubernetes_version
  node_instance_type                  = var.data_node_instance_type
  api_public_access_cidrs             = var.api_public_access_cidrs
  admin_role_arn                      = var.admin_role_arn
  load_balancer_controller_policy_arn = var.load_balancer_controller_policy_arn
}

module "region_b" {
  source    = "./modules/region"
  providers = { aws = aws.b }

  cluster_name                        = var.cluster_name
  region                              = var.region_b.name
  vpc_cidr                            = var.region_b.cidr
  availability_zone_ids               = var.region_b.zone_ids
  peer_cidrs                          = [var.region_a.cidr, var.witness_region.cidr]
  witness                             = false
  kubernetes_version                  = var.kubernetes_version
  node_instance_type                  = var.data_node_instance_type
  api_public_access_cidrs             = var.api_public_access_cidrs
  admin_role_arn                      = var.admin_role_arn
  load_balancer_controller_policy_arn = var.load_balancer_controller_policy_arn
}

module "region_witness" {
  source    = "./modules/region"
  providers = { aws = aws.witness }

  cluster_name                        = var.cluster_name
  region                              = var.witness_region.name
  vpc_cidr                            = var.witness_region.cidr
  availability_zone_ids               = var.witness_region.zone_ids
  peer_cidrs                          = [var.region_a.cidr, var.region_b.cidr]
  witness                             = true
  kubernetes_version                  = var.kubernetes_version
  node_instance_type                  = var.witness_node_instance_type
  api_public_access_cidrs             = var.api_public_access_cidrs
  admin_role_arn                      = var.admin_role_arn
  load_balancer_controller_policy_arn = var.load_balancer_controller_policy_arn
}

# Full mesh of inter-region VPC peerings: each pair of regions replicates
# directly (Meridian also relays through a third region when one link is cut).
module "peering_a_b" {
  source = "./modules/peering"
  providers = {
    aws.requester = aws.a
    aws.accepter  = aws.b
  }

  name      = "${var.cluster_name}-${var.region_a.name}-${var.region_b.name}"
  requester = module.region_a.network
  accepter  = module.region_b.network
}

module "peering_a_witness" {
  source = "./modules/peering"
  providers = {
    aws.requester = aws.a
    aws.accepter  = aws.witness
  }

  name      = "${var.cluster_name}-${var.region_a.name}-${var.witness_region.name}"
  requester = module.region_a.network
  accepter  = module.region_witness.network
}

module "peering_b_witness" {
  source = "./modules/peering"
  providers = {
    aws.requester = aws.b
    aws.accepter  = aws.witness
  }

  name      = "${var.cluster_name}-${var.region_b.name}-${var.witness_region.name}"
  requester = module.region_b.network
  accepter  = module.region_witness.network
}
