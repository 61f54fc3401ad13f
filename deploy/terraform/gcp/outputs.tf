output "clusters" {
  description = "GKE cluster per region (gcloud container clusters get-credentials NAME --region R)."
  value       = { for k, m in module.region : k => m.cluster_name }
}

output "repl_addresses" {
  description = "Per region, the reserved internal address of meridian-repl (named in the overlays' networking.gke.io/load-balancer-ip-addresses)."
  value       = { for k, m in module.region : k => { name = m.repl_address_name, address = m.repl_address } }
}

output "public_addresses" {
  description = "Per data region, the reserved external address of meridian-global."
  value       = { for k in keys(local.data_regions) : k => { name = module.region[k].public_address_name, address = module.region[k].public_address } }
}

output "client_endpoint" {
  description = "Name clients connect to (TLS RESP on port 7389); geo-routed to a healthy data region."
  value       = trimsuffix(local.service_fqdn, ".")
}

output "health_checker_cidrs" {
  description = "Google health-check ranges for the meridian-health-probers NetworkPolicy and loadBalancerSourceRanges."
  value       = ["35.191.0.0/16", "130.211.0.0/22"]
}

output "secret_manager_names" {
  description = "Secret Manager secrets External Secrets reads (values are set out of band)."
  value       = ["meridian-requirepass", "meridian-admin-token", "meridian-cluster-secret", "meridian-cluster-ca-crt", "meridian-cluster-ca-key"]
}
