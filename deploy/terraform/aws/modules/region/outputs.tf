output "cluster_name" {
  description = "EKS cluster name."
  value       = aws_eks_cluster.this.name
}

output "network" {
  description = "What the peering module needs."
  value = {
    region                  = var.region
    vpc_id                  = aws_vpc.this.id
    vpc_cidr                = var.vpc_cidr
    private_route_table_ids = aws_route_table.private[*].id
  }
}

output "repl_private_ips" {
  description = "Fixed addresses of the internal replication NLB, one per zone."
  value       = [for s in local.lb_subnets : cidrhost(s, 10)]
}

output "public_ips" {
  description = "Elastic IPs of the public NLB (empty for the witness)."
  value       = aws_eip.public_nlb[*].public_ip
}

output "public_eip_allocation_ids" {
  description = "Allocation ids of the public NLB's Elastic IPs (empty for the witness)."
  value       = aws_eip.public_nlb[*].id
}
