variable "cluster_name" {
  description = "Meridian cluster name; resources are named <cluster_name>-<region>."
  type        = string
}

variable "region" {
  description = "AWS region of this module's provider; also the Meridian region id."
  type        = string
}

variable "vpc_cidr" {
  description = "VPC CIDR, a /16: nodes get three /20s, load balancers and NAT /24s."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && endswith(var.vpc_cidr, "/16")
    error_message = "vpc_cidr must be a /16."
  }
}

variable "availability_zone_ids" {
  description = "Three availability zone ids (e.g. use1-az1). Zone ids name the same zone in every account, unlike zone names."
  type        = list(string)

  validation {
    condition     = length(var.availability_zone_ids) == 3 && alltrue([for z in var.availability_zone_ids : can(regex("^[a-z]{2,4}[0-9]-az[0-9]+$", z))])
    error_message = "Give exactly three zone ids such as use1-az1."
  }
}

variable "peer_cidrs" {
  description = "VPC CIDRs of the other regions (allowed to the replication port)."
  type        = list(string)
}

variable "witness" {
  description = "True for the witness region: smaller nodes, no public endpoint."
  type        = bool
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
}

variable "node_instance_type" {
  description = "Instance type of the managed node group."
  type        = string
}

variable "node_count" {
  description = "Nodes in the managed node group, one per zone."
  type        = number
  default     = 3

  validation {
    condition     = var.node_count >= 3
    error_message = "Use at least three nodes, one per availability zone."
  }
}

variable "api_public_access_cidrs" {
  description = "Networks allowed to the public EKS API endpoint; empty disables it."
  type        = list(string)
}

variable "admin_role_arn" {
  description = "IAM role that gets cluster-admin through an access entry."
  type        = string
}

variable "load_balancer_controller_policy_arn" {
  description = "IAM policy of the AWS Load Balancer Controller."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the control-plane and VPC flow logs."
  type        = number
  default     = 365
}
