output "clusters" {
  description = "EKS cluster name per region (aws eks update-kubeconfig --region R --name N)."
  value = {
    (var.region_a.name)       = module.region_a.cluster_name
    (var.region_b.name)       = module.region_b.cluster_name
    (var.witness_region.name) = module.region_witness.cluster_name
  }
}

output "repl_private_ips" {
  description = "Per region, the internal NLB addresses for aws-load-balancer-private-ipv4-addresses in deploy/kubernetes/overlays/aws/<region>."
  value = {
    (var.region_a.name)       = join(",", module.region_a.repl_private_ips)
    (var.region_b.name)       = join(",", module.region_b.repl_private_ips)
    (var.witness_region.name) = join(",", module.region_witness.repl_private_ips)
  }
}

output "public_eip_allocation_ids" {
  description = "Per data region, the Elastic IP allocations for aws-load-balancer-eip-allocations on the meridian-global Service."
  value = {
    (var.region_a.name) = join(",", module.region_a.public_eip_allocation_ids)
    (var.region_b.name) = join(",", module.region_b.public_eip_allocation_ids)
  }
}

output "client_endpoint" {
  description = "Name clients connect to (TLS RESP on port 7389); latency-routed to a healthy data region."
  value       = local.service_fqdn
}

output "health_check_ids" {
  description = "Route 53 health check per data region (alarm on these)."
  value       = { for k, v in aws_route53_health_check.ready : k => v.id }
}

output "health_checker_cidrs" {
  description = "Route 53 health checker ranges for the meridian-health-probers NetworkPolicy and loadBalancerSourceRanges."
  value       = data.aws_ip_ranges.route53_health_checks.cidr_blocks
}

output "secrets_manager_names" {
  description = "Secrets Manager names External Secrets reads in every region (values are set out of band)."
  value       = ["meridian-requirepass", "meridian-admin-token", "meridian-cluster-secret", "meridian-cluster-ca-crt", "meridian-cluster-ca-key"]
}
