variable "cluster_name" {
  description = "Meridian cluster name; resources are named <kind>-<cluster_name>-<location>."
  type        = string
}

variable "location" {
  description = "Azure location; also the Meridian region id."
  type        = string
}

variable "cidr" {
  description = "The region's /16: nodes x.x.0.0/20, internal load balancers x.x.32.0/24 (pods use the overlay range, not the VNet)."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.cidr)) && endswith(var.cidr, "/16")
    error_message = "cidr must be a /16."
  }
}

variable "witness" {
  description = "True for the witness region: smaller nodes, no public address."
  type        = bool
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version."
  type        = string
}

variable "vm_size" {
  description = "VM size of the Meridian user node pool."
  type        = string
}

variable "system_vm_size" {
  description = "VM size of the system node pool (critical add-ons only)."
  type        = string
  default     = "Standard_D2ds_v5"
}

variable "tenant_id" {
  description = "Entra ID tenant."
  type        = string
}

variable "admin_group_object_ids" {
  description = "Entra ID groups with cluster-admin."
  type        = list(string)
}

variable "client_cidrs" {
  description = "Networks allowed to the public TLS port 7389."
  type        = list(string)
}

variable "health_prober_cidrs" {
  description = "Traffic Manager probe ranges allowed to the HTTP port 7380."
  type        = list(string)
}

variable "peer_cidrs" {
  description = "VNet ranges of the other regions (replication port 7381)."
  type        = list(string)
}

variable "log_retention_days" {
  description = "Retention of the Log Analytics workspace."
  type        = number
  default     = 90

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "Log Analytics retention is 30 to 730 days."
  }
}

variable "tags" {
  description = "Tags for the region's resources."
  type        = map(string)
}
