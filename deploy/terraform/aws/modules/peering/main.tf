# One inter-region VPC peering and the routes that use it on both sides.
terraform {
  required_providers {
    aws = {
      source                = "hashicorp/aws"
      version               = "~> 6.0"
      configuration_aliases = [aws.requester, aws.accepter]
    }
  }
}

variable "name" {
  description = "Name tag of the peering connection."
  type        = string
}

variable "requester" {
  description = "Requesting side: network output of modules/region."
  type = object({
    region                  = string
    vpc_id                  = string
    vpc_cidr                = string
    private_route_table_ids = list(string)
  })
}

variable "accepter" {
  description = "Accepting side: network output of modules/region."
  type = object({
    region                  = string
    vpc_id                  = string
    vpc_cidr                = string
    private_route_table_ids = list(string)
  })
}

data "aws_caller_identity" "accepter" {
  provider = aws.accepter
}

resource "aws_vpc_peering_connection" "this" {
  provider      = aws.requester
  vpc_id        = var.requester.vpc_id
  peer_vpc_id   = var.accepter.vpc_id
  peer_region   = var.accepter.region
  peer_owner_id = data.aws_caller_identity.accepter.account_id
  auto_accept   = false

  tags = {
    Name = var.name
  }
}

resource "aws_vpc_peering_connection_accepter" "this" {
  provider                  = aws.accepter
  vpc_peering_connection_id = aws_vpc_peering_connection.this.id
  auto_accept               = true

  tags = {
    Name = var.name
  }
}

resource "aws_route" "requester" {
  provider                  = aws.requester
  count                     = length(var.requester.private_route_table_ids)
  route_table_id            = var.requester.private_route_table_ids[count.index]
  destination_cidr_block    = var.accepter.vpc_cidr
  vpc_peering_connection_id = aws_vpc_peering_connection.this.id
}

resource "aws_route" "accepter" {
  provider                  = aws.accepter
  count                     = length(var.accepter.private_route_table_ids)
  route_table_id            = var.accepter.private_route_table_ids[count.index]
  destination_cidr_block    = var.requester.vpc_cidr
  vpc_peering_connection_id = aws_vpc_peering_connection_accepter.this.id
}

output "id" {
  description = "VPC peering connection id."
  value       = aws_vpc_peering_connection.this.id
}
